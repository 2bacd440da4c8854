"""Understanding tasks (caption, ask, extract, check, chat): each a typed request and a queued job kind."""
