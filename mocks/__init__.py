"""Local stand-ins that speak the LlamaParse and OpenAI HTTP APIs."""
