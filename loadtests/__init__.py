"""APM's load scenarios: the Locust users (locustfile.py), the driver that starts APM and runs them
(scenario.py), and the reports it writes (report.py)."""
