"""Networks and the generators behind one interface (``models.generator``)."""
