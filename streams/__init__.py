"""streams: telemetry in Kafka → live calibration in Faust → samples out.

Owns the versioned event contracts (`schemas`), the client telemetry producer
(`producer`), the attribution window and calibration as pure functions (`window`,
`calibration`) and the thin Faust worker around them (`app`). May import `toolrec.*`,
`infra.topics` and the prompt factorization of `generator.prompt` (a pure function, so
that samples and training share one definition of a sample's prompt).
"""
