"""Request and response bodies (pydantic), with the examples /docs shows."""
