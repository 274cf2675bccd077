from diffaug.cli import run
from diffaug.report.command import main

run(main)
