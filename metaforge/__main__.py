from metaforge.cli import main

if __name__ == "__main__":  # not when a spawned child (the STEP reader) imports the main module
    main()
