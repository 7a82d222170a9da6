"""What RQ-VAE, RQ-KMeans and OPQ share: one codebook size at every position, and hyper-parameters that
are exactly their constructor arguments (so ``tokenizer.json`` needs no hand-kept list of names)."""

from __future__ import annotations

import inspect


class UniformCodebookTokenizer:
    """Mixin: ``code_length`` read from the constructor argument named by ``code_length_field``,
    ``codebook_sizes`` = ``codebook_size`` at every position, ``hyper_parameters`` from the signature."""

    code_length_field: str = "num_levels"   # the constructor argument that is the code length

    @property
    def code_length(self) -> int:
        """Number of code positions per item."""
        return getattr(self, self.code_length_field)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """``codebook_size`` at every position."""
        return (self.codebook_size,) * self.code_length

    def hyper_parameters(self) -> dict:
        """Constructor arguments (what ``tokenizer.json`` stores), in signature order; tuples as lists."""
        names = [name for name in inspect.signature(type(self).__init__).parameters if name != "self"]
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in ((name, getattr(self, name)) for name in names)}
