from azure.storage.blob import ContainerClient


def test_azurite_round_trip(fresh_container: ContainerClient) -> None:
    fresh_container.upload_blob("hello.txt", b"hi")
    assert fresh_container.download_blob("hello.txt").readall() == b"hi"
