from edgebert.cli import entry

entry()
