"""reconfigure: keeps a Cabalmail tier's sendmail and OpenDKIM files in step with DynamoDB."""

__version__ = "0.1.0"
