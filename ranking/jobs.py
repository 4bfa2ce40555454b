def register_kinds() -> None:
    pass
