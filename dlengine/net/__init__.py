"""What dlengine lets a connection reach, independent of the HTTP client:
the egress policy (``egress``) and the redirect rules (``redirects``), pure
functions that the urllib3 path and the libcurl path both call."""
