"""Job code that runs under spark-submit (driver and executors); no luigi in here."""
