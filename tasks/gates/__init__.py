"""Gates: tolerance against fp32, Great Expectations suites, the regression and release gates, the selection policy."""
