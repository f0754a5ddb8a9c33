"""The method: episodic memories of past reasoning and the Memory-R/Memory-R+ rewards computed from them."""
