"""Benchmarks (`make bench`): each module prints measured numbers next to the ceiling or
alternative it names, as a ratio. Never part of the tests."""
