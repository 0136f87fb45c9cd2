"""The service router: which client (real or mock) serves each parse and embedding call."""
