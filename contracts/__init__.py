"""contracts: the stage contracts of DESIGN.md §3, one definition each.

Owns
- the events and the sample (`contracts.events`): `Impression`, `Feedback`, `Sample`, their
  schema tags (`"impression/1"`, ...), `parse_event` / `validate_payload`, the factories
  `new_impression` / `new_feedback` every producer uses, and `pseudonymize` (the keyed hash of
  user ids);
- Arrow columns derived from a contract (`contracts.arrow`: the `samples` table's columns
  are `arrow_fields(Sample)`, never written a second time);
- the dead-letter record and its header layout (`contracts.dlq`);
- privacy (`contracts.privacy`, `contracts.config`): the PII policy for free text (`redact`,
  with phonenumbers, python-stdnum and pyap as detectors) and its settings section
  `[privacy]`; the verifiable pseudonyms (`pseudonymize`, `is_pseudonym`,
  `pseudonymize_ids`, `require_shared_key`) are in `contracts.events`;
- which model serves (`contracts.models`): `BASE_VERSION`, `version_name`, the typed
  `ModelAnnouncement` of `toolrec.models`.

The per-suggestion prompt factorization (`sample_prompt`, `format_completion`) stays in
`generator.prompt`, beside the template it factorizes: it depends on the template's
delimiters and text cleaning, and splitting them would put the template in two places.
`streams` and the trainer import those two functions from there.

May import: the standard library, pydantic, pyarrow, the PII detectors above and the
`toolrec` core (errors, durable). Imports no stage; every stage imports it.
"""
