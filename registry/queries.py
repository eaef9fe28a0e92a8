"""The registry's SPARQL questions, as templates over the ``eb:`` terms (see rules.py)."""

from __future__ import annotations

from registry.vocab import PREFIXES

# An artifact ?a fits device ?d: memory, runtime, precision (when declared) and every op it uses.
COMPATIBLE = """
  ?d eb:ramBytes ?dram ; eb:flashBytes ?dflash .
  ?a eb:requiresRamBytes ?ram ; eb:requiresFlashBytes ?flash ; eb:runtime ?runtime .
  FILTER(?ram <= ?dram && ?flash <= ?dflash)
  ?d eb:supportsRuntime ?runtime .
  OPTIONAL { ?a eb:precision ?precision }
  FILTER(!BOUND(?precision) || EXISTS { ?d eb:supportsPrecision ?precision })
  FILTER NOT EXISTS { ?a eb:usesOp ?op . FILTER NOT EXISTS { ?runtime eb:supportsOp ?op } }
  FILTER(NOT EXISTS { ?d eb:wantsFamily ?wanted } || EXISTS { ?d eb:wantsFamily ?fam . ?a eb:family ?fam })
"""

MATCH = PREFIXES + """
SELECT DISTINCT ?artifact ?id ?runtime ?precision ?ram ?flash ?size ?fidelity ?family ?created WHERE {
  BIND(<%(device)s> AS ?d)
""" + COMPATIBLE + """
  BIND(?a AS ?artifact)
  OPTIONAL { ?a schema:identifier ?id }
  OPTIONAL { ?a eb:family ?family ; schema:dateCreated ?created }
  OPTIONAL { ?a eb:sizeBytes ?size }
  OPTIONAL { ?a eb:fidelityMean ?fidelity }
  OPTIONAL { ?a eb:memoryMeasured ?measured }
  BIND(IF(BOUND(?measured), 1, 0) AS ?measuredRank)
} ORDER BY DESC(?measuredRank) DESC(COALESCE(?fidelity, -1.0)) ASC(COALESCE(?size, ?flash)) ?artifact
"""

# ``match`` in two steps: MATCH's OPTIONALs, joined after COMPATIBLE, made Oxigraph scan every
# subject with those properties (devices' schema:identifier included): 0.6 ms at 10,000 devices,
# 23 ms at 100,000. The candidates first, then their facts by VALUES, sorted as MATCH sorts.
MATCH_CANDIDATES = PREFIXES + """
SELECT DISTINCT ?a ?runtime ?precision ?ram ?flash WHERE {
  BIND(<%(device)s> AS ?d)
""" + COMPATIBLE + """
}
"""
ARTIFACT_FACTS = PREFIXES + """
SELECT ?a ?id ?family ?created ?size ?fidelity ?measured WHERE { VALUES ?a { %(artifacts)s }
  OPTIONAL { ?a schema:identifier ?id }
  OPTIONAL { ?a eb:family ?family ; schema:dateCreated ?created }
  OPTIONAL { ?a eb:sizeBytes ?size }
  OPTIONAL { ?a eb:fidelityMean ?fidelity }
  OPTIONAL { ?a eb:memoryMeasured ?measured }
}
"""

DEVICES_FOR = PREFIXES + """
SELECT DISTINCT ?device ?id ?dram ?dflash WHERE {
  BIND(<%(artifact)s> AS ?a)
  ?d a eb:Device .
""" + COMPATIBLE + """
  BIND(?d AS ?device)
  OPTIONAL { ?d schema:identifier ?id }
} ORDER BY ?device
"""

# devices lacking a capability COMPATIBLE reads (all of them, or %(only)s: ``VALUES ?d { <iri> }``)
CAPABILITY_GAPS = PREFIXES + """
SELECT ?d ?ramBytes ?flashBytes ?supportsRuntime ?supportsPrecision WHERE {
  ?d a eb:Device . %(only)s
  BIND(EXISTS { ?d eb:ramBytes ?r } AS ?ramBytes) BIND(EXISTS { ?d eb:flashBytes ?f } AS ?flashBytes)
  BIND(EXISTS { ?d eb:supportsRuntime ?t } AS ?supportsRuntime)
  BIND(EXISTS { ?d eb:supportsPrecision ?p } AS ?supportsPrecision)
  FILTER(!?ramBytes || !?flashBytes || !?supportsRuntime || !?supportsPrecision)
} ORDER BY ?d
"""
CAPABILITIES = ("ramBytes", "flashBytes", "supportsRuntime", "supportsPrecision")

DEPLOYMENTS = PREFIXES + """
SELECT DISTINCT ?deployment ?device ?artifact ?status ?time ?previous WHERE {
  ?deployment a eb:Deployment ; eb:device ?device ; eb:artifact ?artifact ; eb:status ?status ;
              prov:startedAtTime ?time .
  OPTIONAL { ?deployment eb:previousArtifact ?previous }
  %(filter)s
} ORDER BY ?device DESC(?time)
"""

# `outdated` asks three small questions and joins them in Python (registry.outdated): one SPARQL
# join over every (deployment, newer version) pair was 4.7 s for 10k devices; this is < 1 s.
ACTIVE_DEPLOYMENTS = PREFIXES + """
SELECT DISTINCT ?device ?current ?family ?created WHERE {
  ?dep a eb:Deployment ; eb:status "active" ; eb:device ?device ; eb:artifact ?current .
  ?current eb:family ?family ; schema:dateCreated ?created .
}
"""

DEPLOYED_DEVICE_CAPABILITIES = PREFIXES + """
SELECT ?device ?ram ?flash (GROUP_CONCAT(DISTINCT STR(?rt); separator=" ") AS ?runtimes)
       (GROUP_CONCAT(DISTINCT STR(?p); separator=" ") AS ?precisions) WHERE {
  ?dep a eb:Deployment ; eb:status "active" ; eb:device ?device .
  ?device eb:ramBytes ?ram ; eb:flashBytes ?flash .
  OPTIONAL { ?device eb:supportsRuntime ?rt } OPTIONAL { ?device eb:supportsPrecision ?p }
} GROUP BY ?device ?ram ?flash
"""

# versioned artifacts whose runtime runs every op they use (checked once per artifact)
RUNNABLE_VERSIONS = PREFIXES + """
SELECT DISTINCT ?artifact ?family ?created ?ram ?flash ?runtime ?precision WHERE {
  ?artifact eb:family ?family ; schema:dateCreated ?created ; eb:requiresRamBytes ?ram ;
            eb:requiresFlashBytes ?flash ; eb:runtime ?runtime .
  OPTIONAL { ?artifact eb:precision ?precision }
  FILTER NOT EXISTS { ?artifact eb:usesOp ?op . FILTER NOT EXISTS { ?runtime eb:supportsOp ?op } }
}
"""

LINEAGE = PREFIXES + """
SELECT ?entity (SAMPLE(?t) AS ?type) (SAMPLE(?n) AS ?name) ?depth WHERE {
  { BIND(<%(artifact)s> AS ?entity) BIND(0 AS ?depth) }
  UNION
  { <%(artifact)s> prov:wasDerivedFrom ?entity . BIND(1 AS ?depth) }
  UNION
  { <%(artifact)s> prov:wasDerivedFrom/prov:wasDerivedFrom ?entity . BIND(2 AS ?depth) }
  UNION
  { <%(artifact)s> prov:wasDerivedFrom/prov:wasDerivedFrom/prov:wasDerivedFrom+ ?entity . BIND(3 AS ?depth) }
  OPTIONAL { ?entity a ?t . FILTER(STRSTARTS(STR(?t), STR(eb:))) }
  OPTIONAL { ?entity schema:name ?n }
} GROUP BY ?entity ?depth ORDER BY ?depth
"""

RESOLVE = PREFIXES + """
SELECT ?thing WHERE {
  { BIND(<%(iri)s> AS ?thing) ?thing ?p ?o } UNION { ?thing schema:identifier %(literal)s }
} LIMIT 2
"""
