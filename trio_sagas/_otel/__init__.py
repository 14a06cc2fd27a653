"""Internals of :mod:`trio_sagas.otel` (imported only by it: they need opentelemetry)."""
