"""streams: telemetry in Kafka → live calibration in Faust → samples out.

Owns the client telemetry producer (`producer`), the attribution window and calibration as
pure functions (`window`, `calibration`) and the thin Faust worker around them (`app`).
May import `contracts` (the events, the sample, the DLQ record), the `toolrec` core,
`infra.topics` and the prompt factorization of `generator.prompt` (a pure function, so
that samples and training share one definition of a sample's prompt). Never `trainer`,
`lakehouse`, `serving` or `loop`.
"""
