"""Layer 3, the application: the command line, the run driver, the record command, leaderboard,
plots and compare. Built on tasks, model_adapters and collab (layer 2) and the core (layer 1);
nothing below imports it."""
