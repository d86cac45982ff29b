"""OpenAI family: models, chat completions, responses, embeddings."""


def register(api) -> None:  # replaced by the real plugin
    pass
