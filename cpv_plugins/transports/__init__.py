"""How the DVC-format engine reaches a store: the transport interface and the two
that ship (``local``: a directory; ``s3``: boto3). Public for storage authors."""
