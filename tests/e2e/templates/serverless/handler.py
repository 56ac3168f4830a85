import json


def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
    return {"statusCode": 200, "body": json.dumps({"fn": context.function_name})}
