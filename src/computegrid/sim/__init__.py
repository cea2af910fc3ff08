"""The simulator: drives core's placement policies over traces. It reads files; core never does."""
