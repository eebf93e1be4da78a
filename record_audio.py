from mser.cli.record_audio import main

if __name__ == "__main__":
    main()
