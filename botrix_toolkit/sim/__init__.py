"""Workers and load simulation: a ``Worker`` runs handlers; scenarios drive a queue hard."""
