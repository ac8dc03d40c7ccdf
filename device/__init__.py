"""chot scanner unit: camera -> decode -> decide -> indicator/outbox -> uplink."""
