"""Derivation rules run on every import: S3N / SeLoC-ML and TD descriptions -> the few ``eb:``
terms that matching reads. The original triples are kept as they were; these add to them.

Unit factors follow the OM ontology (kilobyte = 1000 bytes, kibibyte = 1024 bytes).
A microcontroller that declares no runtime is taken to run TensorFlow Lite Micro with fp32
and int8 (SeLoC-ML's platform); a NeuralNetwork's ``schema:runtimePlatform`` string names its runtime.
"""

from __future__ import annotations

from registry.vocab import PREFIXES

UNITS = """VALUES (?unit ?factor) { (om:byte 1) (om:kilobyte 1000) (om:kibibyte 1024)
  (om:megabyte 1000000) (om:mebibyte 1048576) (om:gigabyte 1000000000) }"""

RULES = [
    # device memory from S3N: SmartSensor/Device -> MicroController -> capability -> RAM/Flash
    f"""INSERT {{ ?d eb:ramBytes ?bytes ; a eb:Device }} WHERE {{
      ?d ssn:hasSubSystem/s3n:hasSystemCapability/ssn-system:hasSystemProperty ?p .
      ?p a s3nx:RAM ; schema:value ?v ; schema:unitCode ?unit . {UNITS}
      FILTER NOT EXISTS {{ ?d eb:ramBytes ?any }}
      BIND(xsd:integer(ROUND(?v * ?factor)) AS ?bytes) }}""",
    f"""INSERT {{ ?d eb:flashBytes ?bytes ; a eb:Device }} WHERE {{
      ?d ssn:hasSubSystem/s3n:hasSystemCapability/ssn-system:hasSystemProperty ?p .
      ?p a s3nx:Flash ; schema:value ?v ; schema:unitCode ?unit . {UNITS}
      FILTER NOT EXISTS {{ ?d eb:flashBytes ?any }}
      BIND(xsd:integer(ROUND(?v * ?factor)) AS ?bytes) }}""",
    """INSERT { ?d eb:supportsRuntime eb:tflite-micro ; eb:supportsPrecision eb:fp32, eb:int8 } WHERE {
      ?d a eb:Device ; ssn:hasSubSystem/a s3n:MicroController .
      FILTER NOT EXISTS { ?d eb:supportsRuntime ?r } }""",
    """INSERT { ?d eb:sensor ?kind } WHERE {
      ?d a eb:Device ; ssn:hasSubSystem/a ?cls .
      FILTER(STRSTARTS(STR(?cls), STR(sosax:)) || STRSTARTS(STR(?cls), STR(sosa:)))
      BIND(LCASE(REPLACE(STR(?cls), "^.*[/#]", "")) AS ?kind) }""",
    """INSERT { ?d schema:identifier ?id } WHERE {
      ?d a eb:Device . FILTER NOT EXISTS { ?d schema:identifier ?x }
      BIND(REPLACE(STR(?d), "^.*[/#:]", "") AS ?id) }""",
    # model requirements from S3N procedure features
    f"""INSERT {{ ?nn eb:requiresRamBytes ?bytes }} WHERE {{
      ?nn s3n:hasProcedureFeature/ssn-system:inCondition ?c .
      ?c a s3nx:RAM ; schema:minValue ?v ; schema:unitCode ?unit . {UNITS}
      BIND(xsd:integer(CEIL(?v * ?factor)) AS ?bytes) }}""",
    f"""INSERT {{ ?nn eb:requiresFlashBytes ?bytes }} WHERE {{
      ?nn s3n:hasProcedureFeature/ssn-system:inCondition ?c .
      ?c a s3nx:Flash ; schema:minValue ?v ; schema:unitCode ?unit . {UNITS}
      BIND(xsd:integer(CEIL(?v * ?factor)) AS ?bytes) }}""",
    """INSERT { ?nn eb:runtime ?rt } WHERE {
      ?nn a nnet:NeuralNetwork ; schema:runtimePlatform ?name .
      VALUES (?key ?rt) { ("tflite micro" eb:tflite-micro) ("tensorflow lite micro" eb:tflite-micro)
                          ("tflite" eb:litert) ("litert" eb:litert) ("onnx runtime" eb:onnxruntime)
                          ("onnxruntime" eb:onnxruntime) }
      FILTER(LCASE(STR(?name)) = ?key) }""",
]


def rule_constructs() -> list[str]:
    """The rules as CONSTRUCT queries (each rule's INSERT template and pattern): what each adds. The
    registry runs them in order on a scratch copy of what is written, adding each one's new triples
    before the next (so a rule sees what the ones before it derived)."""
    return [PREFIXES + r.replace("INSERT", "CONSTRUCT", 1) for r in RULES]
