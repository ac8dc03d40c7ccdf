"""Test and benchmark harness shared by tests/ and bench/: a real Mosquitto, keys and passes,
config files, a whole site as processes, and one polling helper. Not part of the installed
package; test-only fixtures stay in tests/support."""
