"""The edge server: gRPC servicers, device registry, orchestration API, solvers."""
