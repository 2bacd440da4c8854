"""The history browser over ``outputs/``: index, search, thumbnails and delete-to-trash."""
