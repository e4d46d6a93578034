"""Download engines: the libcurl multi loop that serves HTTP(S)."""
