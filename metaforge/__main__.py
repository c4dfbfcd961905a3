from metaforge.cli import main

main()
