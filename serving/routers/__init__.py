"""One router per resource: recommend, feedback, health, metrics, admin."""
