"""Output formats: a run's results as KTAP, JUnit, KCIDB and HTML (cases.py); workloads as YAML."""
