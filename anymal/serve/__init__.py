"""OpenAI-compatible serving (`anymal serve`): protocol.py parses requests, engine.py batches them,
app.py is the FastAPI app (`create_app(model, ServeConfig(...))`)."""
