"""The baseline towers, behind the tower interface of ``ranking.towers`` (one config, ``BaselineConfig``)."""
