"""lm-eval's loader for the shipped tasks: their `data_files` are read beside this file, from any working folder.

Each shipped task YAML names `custom_dataset: !function local_data.load`; lm-eval calls it with the
task's metadata and `dataset_kwargs`, and would otherwise resolve the relative `data_files` against
the working folder. fournil's own task runner reads `data_files` itself and ignores this.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(data_files: dict[str, str], **_metadata):
    import datasets

    return datasets.load_dataset("json", data_files={split: str(HERE / name) for split, name in data_files.items()})
