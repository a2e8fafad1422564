"""What tests, benchmarks and the demo share: test data (`items`), a moto-backed AWS world
and a throw-away tier root (`world`), account roots for the real useradd (`accounts`)."""
