//! The host API client: typed calls, lenient reply parsing, error classes, pacing, streamed uploads.
