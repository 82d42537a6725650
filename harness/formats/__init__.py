"""Output formats: a run's results as KTAP, JUnit, KCIDB and an HTML report (see cases.py)."""
