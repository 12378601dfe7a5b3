"""Callbacks for serving layers that publish to Warden in-process (README, "Connect your
serving layer"). Each imports its serving layer only when used: none is a dependency of
Warden itself."""
