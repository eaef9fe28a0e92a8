"""The stored copy of a Thing Description: its JSON, deflated against a fixed dictionary.

The registry keeps each TD's JSON beside its RDF (``eb:tdDocument``) so that a TD comes back as it
was given. That literal was the largest thing a device costs in the store (11% of a fleet store:
Oxigraph's RocksDB leaves its first two levels uncompressed, and a 100,000-device store sits there).
So the document is stored deflated (raw DEFLATE, RFC 1951) against a preset dictionary of the TD
vocabulary, in base85: a typical device TD of 590 characters takes about 150.

The literal's datatype says how to read it:
- ``rdf:JSON``: the JSON itself (stores written before, and a TD that does not get shorter);
- ``eb:deflatedJSON-1``: base85 of the JSON deflated against ``DICTIONARY_1``.

``DICTIONARY_1`` must never change: documents written with it are read with it. A different
dictionary gets a new datatype (``-2``) beside this one.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from edgebert.errors import DescriptionError
from registry.vocab import EB, RDF

JSON_DATATYPE = RDF + "JSON"
DEFLATED_DATATYPE = EB + "deflatedJSON-1"

# What TDs repeat, the most frequent last (DEFLATE finds nearer matches in fewer bits). Frozen.
DICTIONARY_1 = (
    b'"@type": "ThingDirectory", "base": "https://", "version": {"instance": "1.0.0"}, '
    b'"created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "support": "mailto:", '
    b'"links": [{"rel": "type", "href": "", "type": "application/td+json"}], "uriVariables": {}, '
    b'"schemaDefinitions": {}, "profile": [], "titles": {"en": ""}, "descriptions": {"en": ""}, '
    b'"description": "", "@language": "en", "readOnly": true, "writeOnly": false, "observable": true, '
    b'"unit": "", "minimum": 0, "maximum": 100, "enum": [], "const": "", "default": "", '
    b'"format": "date-time", "contentMediaType": "", "items": {"type": "number"}, "minItems": 1, '
    b'"maxItems": 1, "required": [], "additionalProperties": false, '
    b'"properties": {}, "type": "object", "type": "array", "type": "boolean", "type": "integer", '
    b'"type": "number", "safe": false, "idempotent": false, "synchronous": true, '
    b'"input": {"type": "object"}, "output": {"type": "object"}, "data": {"type": "object"}, '
    b'"subscription": {}, "cancellation": {}, "dataResponse": {}, '
    b'"contentType": "application/json", "contentCoding": "gzip", "subprotocol": "longpoll", '
    b'"response": {"contentType": "application/json"}, "additionalResponses": [], '
    b'"htv:methodName": "GET", "htv:methodName": "POST", "htv:methodName": "PUT", '
    b'"op": ["readproperty", "writeproperty"], "op": "observeproperty", "op": "unobserveproperty", '
    b'"op": "invokeaction", "op": "queryaction", "op": "cancelaction", "op": "subscribeevent", '
    b'"op": "unsubscribeevent", "op": ["readallproperties", "writeallproperties", "readmultipleproperties", '
    b'"writemultipleproperties", "observeallproperties", "unobserveallproperties", "subscribeallevents", '
    b'"unsubscribeallevents", "queryallactions"], '
    b'"securityDefinitions": {"basic_sc": {"scheme": "basic", "in": "header"}, '
    b'"bearer_sc": {"scheme": "bearer", "in": "header", "format": "jwt", "alg": "ES256", "authorization": ""}, '
    b'"psk_sc": {"scheme": "psk"}, "apikey_sc": {"scheme": "apikey", "in": "header", "name": ""}, '
    b'"oauth2_sc": {"scheme": "oauth2", "flow": "code", "token": "", "scopes": []}, '
    b'"combo_sc": {"scheme": "combo", "oneOf": [], "allOf": []}}, "security": ["basic_sc"], '
    b'"actions": {"": {"forms": [{"href": "https://"}]}}, "events": {"": {"data": {"type": "string"}, '
    b'"forms": [{"href": "coap://", "op": "subscribeevent"}]}}, "forms": [{"href": "http://"}], '
    b'"mqtt://", "coaps://", "https://", "http://", "urn:uuid:", '
    b'"@context": ["https://www.w3.org/2019/wot/td/v1", "https://www.w3.org/2022/wot/discovery"], '
    b'"eb:accelerator": "", "eb:sensor": "", '
    b'"eb:supportsRuntime": [{"@id": "eb:onnxruntime"}, {"@id": "eb:litert"}, {"@id": "eb:c99"}], '
    b'"eb:supportsPrecision": [{"@id": "eb:fp32"}, {"@id": "eb:binary"}], '
    b'"eb:supportsRuntime": [{"@id": "eb:tflite-micro"}, {"@id": "eb:c99"}], '
    b'"eb:supportsPrecision": [{"@id": "eb:int8"}, {"@id": "eb:binary"}], '
    b'"eb:cpuArchitecture": "", "eb:cpuClockHz": 1000000, "eb:flashBytes": 1000000, '
    b'"eb:memberOf": {"@id": "urn:"}, "eb:ramBytes": 1000000, "id": "urn:", '
    b'"properties": {"": {"forms": [{"href": ""}], "type": "string"}}, '
    b'"security": "nosec_sc", "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "title": "'
    b'{"@context": ["https://www.w3.org/2022/wot/td/v1.1", {"eb": "https://w3id.org/edgebert/ns#"}], '
    b'{"@context": "https://www.w3.org/2022/wot/td/v1.1", '
)


def canonical(td: dict[str, Any]) -> str:
    """The TD as the registry keeps it: sorted keys, so equal TDs are equal text."""
    return json.dumps(td, sort_keys=True)


def encode(td: dict[str, Any]) -> tuple[str, str]:
    """(lexical form, datatype IRI) of the stored TD: deflated when that is shorter."""
    text = canonical(td)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY_1)
    packed = base64.b85encode(packer.compress(text.encode()) + packer.flush()).decode("ascii")
    return (packed, DEFLATED_DATATYPE) if len(packed) < len(text) else (text, JSON_DATATYPE)


MAX_DOCUMENT_BYTES = 16 << 20  # inflated: a stored TD larger than this is refused, not expanded (a TD is at most
# 1 MB by default on the way in: `registry serve --max-body`)


def decode(value: str, datatype: str | None) -> dict[str, Any]:
    """The TD from a stored literal (``datatype`` as the store reports it; none is JSON)."""
    if datatype == DEFLATED_DATATYPE:
        try:
            unpacker = zlib.decompressobj(-15, zdict=DICTIONARY_1)
            raw = unpacker.decompress(base64.b85decode(value), MAX_DOCUMENT_BYTES)
            if unpacker.unconsumed_tail or not unpacker.eof:
                raise ValueError("truncated, or larger than 16 MiB inflated")
            text = raw.decode("utf-8")
        except (ValueError, zlib.error, binascii.Error, UnicodeDecodeError) as exc:
            raise DescriptionError(f"stored TD: expected base85 DEFLATE data ({DEFLATED_DATATYPE}), "
                                   f"found data that does not inflate: {exc}") from None
    elif datatype in (None, JSON_DATATYPE):
        text = value
    else:
        raise DescriptionError(f"stored TD: expected a literal of rdf:JSON or {DEFLATED_DATATYPE}, found {datatype}")
    try:
        td = json.loads(text)
    except ValueError as exc:
        raise DescriptionError(f"stored TD: expected JSON, found: {exc}") from None
    if not isinstance(td, dict):
        raise DescriptionError(f"stored TD: expected a JSON object, found {type(td).__name__}")
    return td
