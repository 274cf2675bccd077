from diffaug.report.cli import main
from diffaug.stages import run

run(main)
