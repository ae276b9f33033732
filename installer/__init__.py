"""Host setup: prerequisite checks, accelerator build choice, services, the Docker stack."""
