"""Benchmarks (`make bench`): each module prints measured numbers next to the ceiling or
alternative it names, as a ratio. Never part of the tests, never installed with the
package (the sink benchmark behind `toolrec lake bench` is `bench.sink`). `bench.samples`
(synthetic Sample rows, out of the production packages) is shared with the tests.

May import every package; no package imports `bench` (`lakehouse.cli` loads `bench.sink`
from the source tree by path when asked to).
"""
