"""The student: one prompt format, a model factory (tiny from config, or a hub checkpoint) and the training stage."""

from .factory import Student, base_checkpoint, build_tiny_student, load_student
from .prompting import build_prompt, build_target, encode_example, program_from_generation
from .train import train_student

__all__ = [
    "Student", "base_checkpoint", "build_prompt", "build_target", "build_tiny_student", "encode_example",
    "load_student", "program_from_generation", "train_student",
]
