"""The model zoo. Each model registers through the ``ppgen.models`` entry points."""
