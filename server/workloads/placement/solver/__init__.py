"""The placement system model (eqs. 1-11, C1-C7), DCPU (Algorithm 1, lines 12-33) and the
paper's parameters (Tables III-IV). Pure: numpy only, no clocks, no I/O."""
