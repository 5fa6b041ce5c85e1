"""The experiment plane of a standing server: submitted runs (``runs``), the
plane that queues them, claims devices and runs their experiments
(``plane``), and the Control gRPC service (``service``)."""
