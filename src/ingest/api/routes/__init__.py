"""One router module per resource; the app includes them all."""
