__version__ = "0.1.0"

def __getattr__(name):
    "`dmkd.load_student` without importing the whole package at `import dmkd`."
    if name == 'load_student':
        from .runs import load_student
        return load_student
    raise AttributeError(f"module 'dmkd' has no attribute {name!r}")
