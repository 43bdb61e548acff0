"""The jobq worker runtime (supervisor, children, leases): see issue 3. Empty until then."""

__all__: list[str] = []
